"""The nouns of workyard: tables, schemas, messages, statuses."""
