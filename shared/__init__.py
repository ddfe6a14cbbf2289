"""Thin library every paper uses: configs, run folders, results, reports, data readers, seeding."""
