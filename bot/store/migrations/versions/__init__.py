"""One module per schema revision, oldest first; Alembic reads them by path, the package only ships them."""
