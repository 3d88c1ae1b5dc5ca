"""The ledger and the e-mail preferences, moved from the followup app: the tables stay (state only)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.moves import relabel_content_types


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('followup', '0008_notification_key_visit_first'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('registry', '0008_history_updated_at_not_indexed'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='NotificationPreference',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('language', models.CharField(choices=[('en', 'English'), ('zh-hans', '简体中文')], default='en', max_length=8)),
                        ('digest', models.BooleanField(default=True, help_text='Untick for one e-mail per item.', verbose_name='one daily digest')),
                        ('paused_until', models.DateField(blank=True, help_text='No e-mail until this date (inclusive).', null=True)),
                        ('unsubscribed', models.BooleanField(default=False)),
                        ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='notification_pref', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'followup_notificationpreference',
                    },
                ),
                migrations.CreateModel(
                    name='Notification',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('visit_reminder', 'Visit reminder'), ('visit_escalation', 'Overdue visit escalated'), ('ae_report', 'Expedited safety report'), ('safety_signal', 'Safety signal to review')], max_length=20)),
                        ('object_id', models.BigIntegerField(help_text='The visit, adverse event or signal the item is about.')),
                        ('stage', models.CharField(max_length=40)),
                        ('recipient_email', models.EmailField(max_length=254)),
                        ('language', models.CharField(default='en', max_length=8)),
                        ('digest', models.BooleanField(default=True)),
                        ('state', models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending (claimed)'), ('sent', 'Sent'), ('failed', 'Failed'), ('cancelled', 'Cancelled (no longer applies)')], default='pending', max_length=10)),
                        ('send_after', models.DateTimeField(help_text="Not before the site's local sending hour.")),
                        ('attempts', models.PositiveSmallIntegerField(default=0)),
                        ('claim_token', models.UUIDField(blank=True, editable=False, null=True)),
                        ('claimed_at', models.DateTimeField(blank=True, null=True)),
                        ('sent_at', models.DateTimeField(blank=True, null=True)),
                        ('message_id', models.CharField(blank=True, max_length=200)),
                        ('last_error', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('recipient_user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('site', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='notifications', to='registry.site')),
                    ],
                    options={
                        'db_table': 'followup_notification',
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(condition=models.Q(('state__in', ['pending', 'sending'])), fields=['send_after'], name='notification_open')],
                        'constraints': [models.UniqueConstraint(fields=('object_id', 'stage', 'kind', 'recipient_email'), name='notification_unique_key')],
                    },
                ),
            ],
        ),
        relabel_content_types('followup', 'notifications', ('notification', 'notificationpreference')),
    ]
