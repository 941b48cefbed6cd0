"""GraphQL: context, permissions, dataloaders, types, queries, mutations, schema."""
