"""Local AWS emulation shared by the rehearsal and the tests.

Real servers (redis-server, docker-registry) on loopback, moto for AWS APIs, and the glue that routes
moto's Step Functions engine to our real Lambda handlers and simulated ECS tasks. Nothing here is
imported by Lambda code.
"""
