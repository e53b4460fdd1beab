"""IAM authentication over TLS for the local RDS Proxy stand-in: the production auth path, run locally.

- ``local_ca``: the local CA and the stand-in's server certificate (the function's ``DB_SSL_CA``)
- ``credentials``: the execution roles' temporary credentials for runtime containers, checkable by the stand-in
- ``rds_token``: verifies RDS IAM auth tokens (SigV4 presigned ``connect`` URLs) with botocore
- ``principals``: who signed a token (the local issuer's role sessions, emulator principals) and what decides
- ``emulator_principals``: keys the emulator issued, looked up (cached, rationed) with their policies
- ``policies``: ``rds-db:connect`` decisions from identity policies (moto's IAM engine); the stack's roles from state
- ``authenticator``: the facade the stand-in and the runtime use, built from deployed state
- ``resolver_shim``: resolves the deployed endpoint name to the stand-in inside a container
- ``errors``: ``AuthError`` and the names of the checks
"""
