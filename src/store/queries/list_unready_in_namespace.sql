-- Unready services of one namespace, walked along the partial index of unready rows
-- (the range is written as in list_services_in_namespace.sql, for the row estimate).
SELECT report AS "report: Json<ServiceHealth>"
FROM service_health
WHERE (namespace, name) >= ($1, $2) AND (namespace, name) <> ($1, $2) AND namespace <= $1
  AND ready_addresses < total_addresses
ORDER BY namespace, name
LIMIT $3
