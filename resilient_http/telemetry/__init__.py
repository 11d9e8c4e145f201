"""OpenTelemetry spans, metrics, redaction and exporter set-up for resilient_http."""
