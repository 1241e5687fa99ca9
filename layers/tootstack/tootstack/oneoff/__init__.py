"""Admin creation and one-off runs through ECS RunTask, started from the Step Functions console.

- `tootstack.oneoff.admin`: the create-admin request (validation, the password secret, the pending
  secret the admin task definition reads through ECS `secrets`, the execution's result).
- `tootstack.oneoff.commands`: the allow-list of `tootctl` sub-commands and `rails` tasks a console
  one-off run may start (argv lists only, never a shell).
- `tootstack.oneoff.redact`: withholding log lines that contain a value of one of the stack's secrets.
- `tootstack.oneoff.tasks`: exit codes and log stream names of stopped ECS tasks.
"""
