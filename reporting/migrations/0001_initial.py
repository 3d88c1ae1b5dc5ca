"""Export jobs and the cohort report entry point, moved from the followup app: the table stays (state only)."""

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
                    name='CohortReport',
                    fields=[
                    ],
                    options={
                        'verbose_name': 'cohort report',
                        'verbose_name_plural': 'cohort reports',
                        'proxy': True,
                        'indexes': [],
                        'constraints': [],
                    },
                    bases=('registry.study',),
                ),
                migrations.CreateModel(
                    name='ExportJob',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('site_ids', models.JSONField(help_text='The sites whose data the export holds.')),
                        ('state', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Ready to download'), ('failed', 'Failed')], default='queued', max_length=10)),
                        ('progress', models.PositiveSmallIntegerField(default=0, help_text='Percent done.')),
                        ('file_path', models.CharField(blank=True, max_length=500)),
                        ('manifest', models.JSONField(blank=True, default=dict)),
                        ('error', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('requested_by_key', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='registry.apikey')),
                        ('study', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='exports', to='registry.study')),
                    ],
                    options={
                        'db_table': 'followup_exportjob',
                        'ordering': ['-created_at'],
                    },
                ),
            ],
        ),
        relabel_content_types('followup', 'reporting', ('exportjob', 'cohortreport')),
    ]
