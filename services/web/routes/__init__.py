"""The web app's routes, one module per group: live (the page and its streams), sessions
(past sessions: pages, downloads, API), marks (the teacher's marks) and docs (the API page).
Each module has a `router`; services/web/app.py includes them."""
