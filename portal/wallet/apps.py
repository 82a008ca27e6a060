from django.apps import AppConfig


class WalletConfig(AppConfig):
    name = "portal.wallet"
    label = "wallet"
