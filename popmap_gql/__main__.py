"""`python -m popmap_gql` is the `popmap-gql` command."""

from popmap_gql.cli import main

raise SystemExit(main())
