"""Writes of the intake app: importing a cohort from spreadsheets, and the empty templates to fill."""

from intake.services.importing import ImportReport, Problem, cohort_import
from intake.services.templates import templates_write, workbook_template

__all__ = ["cohort_import", "ImportReport", "Problem", "templates_write", "workbook_template"]
