"""What the project declares, below everything that acts on it: the sources of
``sources.yml``, the Iceberg table layouts, the PII policies.
"""
