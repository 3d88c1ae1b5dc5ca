import registry.models
from django.db import migrations, models


# The default required items (registry/constants.py, as of this migration), given to the existing
# templates' visits of those codes; a study edits them afterwards.
REQUIRED_ITEMS = ["SLEDAI2K", "PROT24H", "CREAT", "C3", "C4", "ADSDNA"]
REQUIRED_AT = ["BL", "M3", "M6", "M12"]


def install_default_required_items(apps, schema_editor):
    VisitDefinition = apps.get_model("registry", "VisitDefinition")
    VisitDefinition.objects.filter(code__in=REQUIRED_AT).update(required_items=REQUIRED_ITEMS)


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0008_history_updated_at_not_indexed'),
    ]

    operations = [
        migrations.AddField(
            model_name='historicalvisitdefinition',
            name='required_items',
            field=models.JSONField(blank=True, default=list, help_text='Result codes that must be recorded, or said not done with a reason, to complete the visit.', validators=[registry.models.validate_code_list]),
        ),
        migrations.AddField(
            model_name='visitdefinition',
            name='required_items',
            field=models.JSONField(blank=True, default=list, help_text='Result codes that must be recorded, or said not done with a reason, to complete the visit.', validators=[registry.models.validate_code_list]),
        ),
        migrations.RunPython(install_default_required_items, migrations.RunPython.noop),
    ]
