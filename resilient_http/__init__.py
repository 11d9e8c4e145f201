"""resilient_http."""
