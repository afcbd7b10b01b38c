-- Health of one namespace, walked along the primary key and stopped at the page size
-- (the conditions are written as in list_services_in_namespace.sql).
SELECT report AS "report: Json<ServiceHealth>"
FROM service_health
WHERE (namespace, name) >= ($1, $2) AND (namespace, name) <> ($1, $2) AND namespace <= $1
ORDER BY namespace, name
LIMIT $3
