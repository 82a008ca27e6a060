from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "portal.scheduler"
    label = "scheduler"
