import zoneinfo

from django.db import migrations, models


def flag_pre_treatment(apps, schema_editor):
    """An event is pre-treatment when its onset is before the local date of the patient's first infusion (or
    the patient has none)."""
    AdverseEvent = apps.get_model("followup", "AdverseEvent")
    TransplantEvent = apps.get_model("patients", "TransplantEvent")
    first = {
        patient_id: infused_at.astimezone(zoneinfo.ZoneInfo(zone)).date()
        for patient_id, infused_at, zone in TransplantEvent.objects.filter(infusion_number=1).values_list(
            "patient_id", "infused_at", "patient__site__time_zone"
        )
    }
    flagged = [
        pk
        for pk, patient_id, onset in AdverseEvent.objects.values_list("pk", "patient_id", "onset_date")
        if patient_id not in first or onset < first[patient_id]
    ]
    AdverseEvent.objects.filter(pk__in=flagged).update(pre_treatment=True)


class Migration(migrations.Migration):

    dependencies = [
        ('followup', '0011_visit_in_progress_and_not_done'),
    ]

    operations = [
        migrations.AddField(
            model_name='adverseevent',
            name='pre_treatment',
            field=models.BooleanField(default=False, editable=False, help_text='Onset before the first infusion: not treatment-emergent (set by the registry).'),
        ),
        migrations.AddField(
            model_name='historicaladverseevent',
            name='pre_treatment',
            field=models.BooleanField(default=False, editable=False, help_text='Onset before the first infusion: not treatment-emergent (set by the registry).'),
        ),
        migrations.RunPython(flag_pre_treatment, migrations.RunPython.noop),
    ]
