"""The embedded forge: bare repositories served over git smart HTTP by mergegate itself."""
