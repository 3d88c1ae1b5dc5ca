"""Receivers of the patients app's named signals; each hands over to a followup service."""

from django.dispatch import receiver

from followup import services
from patients.signals import day_zero_moved, first_infusion_recorded, patient_left_follow_up


@receiver(first_infusion_recorded, dispatch_uid="followup.schedule_on_first_infusion")
def schedule_on_first_infusion(sender, *, patient, day_zero, **kwargs):
    services.visits_schedule(patient=patient, day_zero=day_zero)


@receiver(day_zero_moved, dispatch_uid="followup.move_visits_with_day_zero")
def move_visits_with_day_zero(sender, *, patient, day_zero, **kwargs):
    services.visits_move_day_zero(patient=patient, day_zero=day_zero)
    services.ae_flag_pre_treatment(patient=patient, day_zero=day_zero)


@receiver(patient_left_follow_up, dispatch_uid="followup.take_out_future_visits")
def take_out_future_visits(sender, *, patient, on_date, reason, status, **kwargs):
    services.visits_take_out(patient=patient, on_date=on_date, reason=reason or status)
