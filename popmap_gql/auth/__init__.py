"""Authentication: who is asking. Never imports strawberry or starlette."""
