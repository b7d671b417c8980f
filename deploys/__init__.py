"""pyinfra deploys: one @deploy per component (nginx, redis, postgres, app); site.py applies them by group."""
