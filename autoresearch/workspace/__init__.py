"""Git and the work trees the agents edit: opening a tag, checking an edit, committing it."""
