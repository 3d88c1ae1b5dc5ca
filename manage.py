#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in {"runserver", "test"}:
        # Changes made by a management command are attributed to it in the audit trail.
        os.environ.setdefault("REGISTRY_AUDIT_DOOR", "command")
        os.environ.setdefault("REGISTRY_AUDIT_ACTOR", f"manage.py {command}".strip())
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
