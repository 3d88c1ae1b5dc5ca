"""The ledger, the e-mail preferences, export jobs and the cohort report now live in the notifications and
reporting apps; their tables stay where they are (state only)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("followup", "0008_notification_key_visit_first"),
        ("notifications", "0001_initial"),
        ("reporting", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="exportjob",
                    name="requested_by",
                ),
                migrations.RemoveField(
                    model_name="exportjob",
                    name="requested_by_key",
                ),
                migrations.RemoveField(
                    model_name="exportjob",
                    name="study",
                ),
                migrations.RemoveField(
                    model_name="notification",
                    name="recipient_user",
                ),
                migrations.RemoveField(
                    model_name="notification",
                    name="site",
                ),
                migrations.RemoveField(
                    model_name="notificationpreference",
                    name="user",
                ),
                migrations.DeleteModel(
                    name="CohortReport",
                ),
                migrations.DeleteModel(
                    name="ExportJob",
                ),
                migrations.DeleteModel(
                    name="Notification",
                ),
                migrations.DeleteModel(
                    name="NotificationPreference",
                ),
            ],
        ),
    ]
