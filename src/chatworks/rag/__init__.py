"""Documents and grounded answers: parse -> chunk -> embed -> index -> retrieve -> answer."""
