"""SQL migrations, shipped inside the package so an installed `engram migrate` finds them."""
