"""Moving models between apps without touching their tables: the migrations' helper for content types.

A model that moves app keeps its table (`Meta.db_table`); its content type is relabelled so that admin
log entries, permissions and anything else pointing at the content type keep pointing at the model.
"""

from django.db import migrations


def relabel_content_types(old_label: str, new_label: str, models: tuple[str, ...]) -> migrations.RunPython:
    """A RunPython operation that relabels the content types of `models` from `old_label` to `new_label`
    (and back when the migration is reversed). A content type already under the target label is kept."""

    def relabel(apps, schema_editor, source: str, target: str) -> None:
        content_type = apps.get_model("contenttypes", "ContentType")
        rows = content_type.objects.using(schema_editor.connection.alias)
        for model in models:
            if not rows.filter(app_label=target, model=model).exists():
                rows.filter(app_label=source, model=model).update(app_label=target)
        from django.contrib.contenttypes.models import ContentType

        ContentType.objects.clear_cache()

    return migrations.RunPython(
        lambda apps, schema_editor: relabel(apps, schema_editor, old_label, new_label),
        lambda apps, schema_editor: relabel(apps, schema_editor, new_label, old_label),
    )
