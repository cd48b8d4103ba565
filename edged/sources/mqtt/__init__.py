"""MQTT ingest: messages on the configured topics become inbox records, acked once committed."""

from edged.sources.mqtt.source import MqttSource

__all__ = ["MqttSource"]
