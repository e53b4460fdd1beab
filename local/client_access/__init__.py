"""Any client against the running local stack, the way AWS documents it: ``python -m local sql`` and ``env``.

- ``stack_functions``: the deployed functions as the emulator's Lambda API lists them (default DB user, roles)
- ``signing``: whose credentials sign the IAM auth token (your emulator keys, else a session of the stack's role)
- ``endpoint_names``: the deployed endpoint name resolving to the local stand-in for one client process
- ``sql``: the ``mariadb`` client through the stand-in over verified TLS with a fresh token (``--print``: the values)
- ``shell_env``: ``eval "$(python -m local env)"`` for the real ``cdktf``, ``terraform`` and ``aws`` commands
"""
