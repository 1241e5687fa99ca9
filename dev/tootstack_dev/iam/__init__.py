"""Least privilege shown from the calls made: record the AWS calls each role makes in the local emulation
(`record`), evaluate them against the role's deployed policies (`policy`, `check`)."""
