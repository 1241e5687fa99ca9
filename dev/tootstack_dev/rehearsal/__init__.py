"""Local rehearsal: deploy template.yaml into moto, stand in for what moto skips, run every stage."""
