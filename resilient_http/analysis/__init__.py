"""Tuning analysis of OTLP JSON telemetry: streaming reader, statistics, rules, report."""
