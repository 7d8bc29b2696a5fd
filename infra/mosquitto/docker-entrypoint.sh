#!/bin/sh
# Eclipse Mosquitto in docker compose: build the password file from MQTT_USER / MQTT_PASSWORD, then
# run the broker. The password never appears on a command line: `printf` is a shell builtin, and
# `mosquitto_passwd -U` hashes the plain-text file in place. The file lives in the container's own
# filesystem (not a volume), owned by the broker's user, mode 0600, rebuilt at every start.
set -eu
: "${MQTT_USER:?set MQTT_USER in .env}"
: "${MQTT_PASSWORD:?set MQTT_PASSWORD in .env}"
mkdir -p /mosquitto/config
cp /config/mosquitto.conf /mosquitto/config/mosquitto.conf
umask 077
printf '%s:%s\n' "$MQTT_USER" "$MQTT_PASSWORD" > /mosquitto/config/passwd
mosquitto_passwd -U /mosquitto/config/passwd
chown mosquitto:mosquitto /mosquitto/config/passwd
chmod 0600 /mosquitto/config/passwd
exec mosquitto -c /mosquitto/config/mosquitto.conf
