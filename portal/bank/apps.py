from django.apps import AppConfig


class BankConfig(AppConfig):
    name = "portal.bank"
    label = "bank"
