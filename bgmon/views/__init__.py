"""Views render `TaskSnapshot`s; none of them computes health."""
