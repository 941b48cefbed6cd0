"""The local identity provider's sign-ins (popmap_gql/auth/local_sessions.py).

Authorization codes and refresh-token sessions of the hosted UI that `serve` offers with
no user pool configured, shared by every worker so that a code issued by one is redeemed,
once, by any other, and a revoked refresh token is refused by all. Only hashes of codes
and refresh tokens are kept; expired rows are deleted as new ones are written. With a pool
configured the tables stay empty.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    """
    CREATE TABLE local_idp_code (
        code_hash text PRIMARY KEY CHECK (code_hash ~ '^[0-9a-f]{64}$'),
        client_id text NOT NULL,
        redirect_uri text NOT NULL,
        code_challenge text NOT NULL,
        scopes text[] NOT NULL,
        person jsonb NOT NULL,
        nonce text,
        expires_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX local_idp_code_expires_at_idx ON local_idp_code (expires_at)",
    """
    CREATE TABLE local_idp_session (
        origin_jti uuid PRIMARY KEY,
        refresh_token_hash text NOT NULL UNIQUE CHECK (refresh_token_hash ~ '^[0-9a-f]{64}$'),
        client_id text NOT NULL,
        sub text NOT NULL,
        person jsonb NOT NULL,
        scopes text[] NOT NULL,
        auth_time timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz
    )
    """,
    "CREATE INDEX local_idp_session_sub_idx ON local_idp_session (sub)",
    "CREATE INDEX local_idp_session_expires_at_idx ON local_idp_session (expires_at)",
]

REVERSE = ["DROP TABLE local_idp_session", "DROP TABLE local_idp_code"]


class Migration(migrations.Migration):
    dependencies = [("models", "0009_map_indexes")]

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
