from django.apps import AppConfig


class AclConfig(AppConfig):
    name = "acl"
