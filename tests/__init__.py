"""The vmafuzz test suite (a package, so that test modules get unique names under xdist)."""
