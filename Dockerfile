FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REGISTRY_VAR_DIR=/app/var

RUN groupadd --system registry \
    && useradd --system --gid registry --home-dir /app --shell /usr/sbin/nologin registry

WORKDIR /app

# pg_dump / pg_restore for `manage.py backup` and `restore` (docs/operations.md): Debian trixie's client (17)
# dumps the compose file's PostgreSQL 16.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first (pyproject.toml alone), so a code change does not reinstall them.
COPY pyproject.toml ./
RUN pip install .

COPY . .

# Static files are collected into the image; the key and host only satisfy the production settings here.
RUN DJANGO_SETTINGS_MODULE=config.settings.production \
    DJANGO_SECRET_KEY=collectstatic-only \
    DJANGO_ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var/exports \
    && chown -R registry:registry /app/var

USER registry

ENV DJANGO_SETTINGS_MODULE=config.settings.production
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", "--no-control-socket"]
