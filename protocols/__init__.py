"""Front-ends: each turns wire bytes into calls on the core and maps core errors to its own codes."""
