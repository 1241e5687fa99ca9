"""tootstack development package: the `tootstack` command, the local AWS emulation, the rehearsal, the cost model and
the IAM check. None of it ships in the Lambda layer (layers/tootstack holds the product code only)."""
