"""`tootstack cost`: the stack's no-load running cost, itemised from template.yaml and a dated price table."""
