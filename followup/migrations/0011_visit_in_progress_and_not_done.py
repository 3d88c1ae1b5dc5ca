from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('followup', '0009_models_moved_to_notifications_and_reporting'),
        ('patients', '0004_history_updated_at_not_indexed'),
        ('registry', '0009_visit_definition_required_items'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='visit',
            name='visit_completed_has_date',
        ),
        migrations.AddField(
            model_name='historicalvisit',
            name='not_done',
            field=models.JSONField(blank=True, default=dict, help_text='Required items without a value, each with the reason (result code: not_done or not_available).'),
        ),
        migrations.AddField(
            model_name='visit',
            name='not_done',
            field=models.JSONField(blank=True, default=dict, help_text='Required items without a value, each with the reason (result code: not_done or not_available).'),
        ),
        migrations.AlterField(
            model_name='historicalvisit',
            name='outcome',
            field=models.CharField(choices=[('open', 'Open'), ('in_progress', 'In progress'), ('completed', 'Completed'), ('missed', 'Missed'), ('not_required', 'Not required')], default='open', max_length=12),
        ),
        migrations.AlterField(
            model_name='visit',
            name='outcome',
            field=models.CharField(choices=[('open', 'Open'), ('in_progress', 'In progress'), ('completed', 'Completed'), ('missed', 'Missed'), ('not_required', 'Not required')], default='open', max_length=12),
        ),
        migrations.AddConstraint(
            model_name='visit',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('outcome__in', ['completed', 'in_progress']), _negated=True), ('actual_date__isnull', False), _connector='OR'), name='visit_entered_has_date', violation_error_message='A visit completed or in progress needs its actual date.'),
        ),
    ]
