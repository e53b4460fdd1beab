"""Lambda handler package; in the deployment zip its modules sit at the top level (handler "app.lambda_handler")."""
