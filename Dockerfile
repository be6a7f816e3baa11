# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto-clients \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN useradd --system mqttadmin && mkdir -p /app/var && chown mqttadmin /app/var
USER mqttadmin
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "mqttadmin.asgi:application"]
