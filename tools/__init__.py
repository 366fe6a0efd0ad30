"""Dev-only tools (code generation); not part of the product's wheel or image."""
