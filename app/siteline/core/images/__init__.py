"""Update images: reading their metadata and checking their detached signatures against trusted keys."""
