"""Schema migrations (Tortoise's own migration framework), applied by `popmap-gql migrate`."""
