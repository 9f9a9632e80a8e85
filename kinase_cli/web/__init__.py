"""`kinase watch --web`: a local page beside the live table, fed by the same watch session."""
