"""pyinfra deploys: one @deploy per component (nginx, redis, postgres, app), and site.py, which applies them by group."""
