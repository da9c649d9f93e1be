//! The OpenAPI 3.1 description of the API, served at `/v1/openapi.json` and
//! printed by `nusomi serve --print-openapi`. A test checks its paths and
//! methods against [`super::ROUTES`].

use serde_json::{json, Value};

fn err(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The document.
pub fn openapi() -> Value {
    let formats: Vec<&str> = crate::spec::OutputFormat::ALL
        .iter()
        .map(|f| f.as_str())
        .collect();
    let presets = crate::spec::ChatPreset::ALL.map(crate::spec::ChatPreset::as_str);
    let syntaxes = crate::spec::ActionSyntax::ALL.map(crate::spec::ActionSyntax::as_str);
    let losses = crate::spec::Loss::ALL.map(crate::spec::Loss::as_str);
    let tasks = crate::spec::Task::ALL.map(crate::spec::Task::as_str);
    let answers = crate::spec::Answer::ALL.map(crate::spec::Answer::as_str);
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^exp_[0-9A-HJKMNP-TV-Z]{26}$"}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "nusomi-export job API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Create, watch, list and cancel exports of sealed computer-use sessions into training datasets (SPEC §6). Every route except /healthz and signed downloads needs `Authorization: Bearer <token>` when the service has tokens configured."
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {
                "operationId": "healthz", "summary": "Liveness", "security": [],
                "responses": {"200": {"description": "The service is up", "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}}}}}
            }},
            "/v1/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": err("Missing or invalid bearer token")}
            }},
            "/v1/exports": {
                "post": {
                    "operationId": "createExport", "summary": "Queue an export",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExportSpec"}}}},
                    "responses": {
                        "202": {"description": "Accepted and durably queued", "headers": {"Location": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Export"}}}},
                        "400": {"description": "Invalid spec: every problem with its field path", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SpecErrors"}}}},
                        "401": err("Missing or invalid bearer token"),
                        "409": err("An unfinished export of this workspace writes another export to the same destination"),
                        "413": {"description": "Body larger than the configured limit"},
                        "415": err("Content-Type is not application/json"),
                        "429": err("The workspace has max_active_jobs exports queued or running (see Retry-After)"),
                        "507": err("A signed_url export, and the workspace's finished signed_url exports the service keeps hold max_signed_bytes already")
                    }
                },
                "get": {
                    "operationId": "listExports", "summary": "List exports, newest first",
                    "parameters": [
                        {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                        {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/Status"}},
                        {"name": "tag", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"}
                    ],
                    "responses": {
                        "200": {"description": "A page", "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Export"}},
                            "next_cursor": {"type": ["string", "null"]}
                        }, "required": ["data", "next_cursor"]}}}},
                        "400": err("Bad status or limit"),
                        "401": err("Missing or invalid bearer token")
                    }
                }
            },
            "/v1/exports/{id}": {
                "get": {
                    "operationId": "getExport", "summary": "One export, with progress while it runs",
                    "parameters": [id_param.clone()],
                    "responses": {
                        "200": {"description": "The export", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Export"}}}},
                        "401": err("Missing or invalid bearer token"),
                        "404": err("No such export")
                    }
                },
                "delete": {
                    "operationId": "cancelExport", "summary": "Cancel a queued or running export (it ends `failed` with error `cancelled`, leaving no manifest and no shards), or forget a finished one (its record, and the files of a signed_url export)",
                    "parameters": [id_param.clone()],
                    "responses": {
                        "202": {"description": "Cancellation requested", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Export"}}}},
                        "204": {"description": "A finished export's record (and signed_url files) removed"},
                        "401": err("Missing or invalid bearer token"),
                        "404": err("No such export")
                    }
                }
            },
            "/v1/exports/{id}/verify": {"get": {
                "operationId": "verifyExport", "summary": "Check a completed export where it was written against its manifest: every shard's presence, size and SHA-256, and the digest",
                "parameters": [id_param.clone()],
                "responses": {
                    "200": {"description": "The report (`intact`, `shards`, `bytes`, `mismatches`: [{problem: missing|size|sha256|digest, path, expected, found}])", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "401": err("Missing or invalid bearer token"),
                    "404": err("No completed export with this id in the caller's workspace"),
                    "409": err("The export's folder holds a symbolic link (not followed)"),
                    "429": err("A verification of this workspace is running, or the service runs as many as it takes at once (Retry-After)"),
                    "504": err("The verification did not finish within its time limit (600 s)")
                }
            }},
            "/v1/exports/{id}/files/{name}": {"get": {
                "operationId": "downloadFile", "summary": "A file of a signed_url export, through its signed link", "security": [],
                "parameters": [
                    id_param,
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "expires", "in": "query", "required": true, "schema": {"type": "integer"}, "description": "Unix seconds"},
                    {"name": "signature", "in": "query", "required": true, "schema": {"type": "string"}, "description": "HMAC-SHA256, hex"},
                    {"name": "Range", "in": "header", "schema": {"type": "string"}, "description": "One bytes= range"}
                ],
                "responses": {
                    "200": {"description": "The file", "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
                    "206": {"description": "The requested range"},
                    "403": err("Missing, tampered or expired signature"),
                    "404": err("No such file"),
                    "416": err("Range not satisfiable")
                }
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Status": {"type": "string", "enum": ["queued", "running", "completed", "failed"]},
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "SpecErrors": {"type": "object", "properties": {
                    "error": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}, "required": ["field", "message"]}}
                }, "required": ["error", "errors"]},
                "ExportSpec": {"type": "object", "description": "SPEC §4: workflow, filter, format, frame_sampling, destination, tag, as_of, shard_size_bytes; splits, redact; unit, coordinates, history, resize, messages", "required": ["workflow", "format", "destination"], "properties": {
                    "workflow": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                    "filter": {"type": "object"},
                    "format": {"type": "string", "enum": formats},
                    "frame_sampling": {"type": "object"},
                    "destination": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "enum": ["s3", "gcs", "azure_blob", "signed_url", "local"]}}},
                    "tag": {"type": "string"},
                    "as_of": {"type": "string", "format": "date-time"},
                    "shard_size_bytes": {"type": "integer", "minimum": 4096},
                    "splits": {"type": "object", "description": "split name → fraction (adding up to 1), plus optional by (session_id | workflow | path | actor_id) and salt", "additionalProperties": true},
                    "redact": {"type": "object", "properties": {"typed_text": {"type": "boolean"}, "patterns": {"type": "array", "items": {"type": "string"}}, "rectangles": {"type": "boolean"}}},
                    "unit": {"type": "string", "enum": ["frame", "step"], "description": "frame (default): one row per frame; step: one row per action (docs/steps.md)"},
                    "coordinates": {"description": "step exports: pixels | normalized | normalized_1000 | smart_resize | {\"smart_resize\": {factor, min_pixels, max_pixels}}", "oneOf": [{"type": "string", "enum": ["pixels", "normalized", "normalized_1000", "smart_resize"]}, {"type": "object", "properties": {"smart_resize": {"type": "object", "properties": {"factor": {"type": "integer", "minimum": 1}, "min_pixels": {"type": "integer", "minimum": 1}, "max_pixels": {"type": "integer", "minimum": 1}}}}}]},
                    "history": {"type": "object", "description": "step exports: previous actions and observation frames per row", "properties": {"actions": {"type": "integer", "minimum": 0, "maximum": 64}, "frames": {"type": "integer", "minimum": 0, "maximum": 16}}},
                    "resize": {"description": "step exports: the observation's resize with relative coordinates: none | smart_resize | {\"smart_resize\": {factor, min_pixels, max_pixels}}", "oneOf": [{"type": "string", "enum": ["none", "smart_resize"]}, {"type": "object", "properties": {"smart_resize": {"type": "object"}}}]},
                    "messages": {"type": "object", "description": "step exports: a chat sample per step; a model preset sets coordinates, resize, history and action_syntax unless given (docs/steps.md)", "required": ["preset"], "properties": {"preset": {"type": "string", "enum": presets}, "system": {"type": "string"}, "action_syntax": {"type": "string", "enum": syntaxes}, "loss": {"type": "string", "enum": losses}, "task": {"type": "string", "enum": tasks, "description": "action (the next action; default) or grounding (one sample per click at a named element: where is it)"}, "answer": {"type": "string", "enum": answers, "description": "grounding: the clicked point (default) or the element's box"}}}
                }},
                "Export": {"type": "object", "required": ["id", "status", "manifest_url", "created_at"], "properties": {
                    "id": {"type": "string"},
                    "status": {"$ref": "#/components/schemas/Status"},
                    "format": {"type": "string"},
                    "workflow": {"type": "array", "items": {"type": "string"}},
                    "tag": {"type": ["string", "null"]},
                    "rows": {"type": ["integer", "null"]},
                    "frames": {"type": ["integer", "null"]},
                    "actions": {"type": ["integer", "null"]},
                    "sessions": {"type": ["integer", "null"]},
                    "shards": {"type": ["integer", "null"], "description": "Shard count"},
                    "bytes": {"type": ["integer", "null"]},
                    "shards_reused": {"type": ["integer", "null"]},
                    "shard_size_bytes": {"type": "integer"},
                    "manifest_url": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "as_of": {"type": ["string", "null"], "format": "date-time", "description": "The snapshot instant: only sessions sealed at or before it are exported"},
                    "resolved": {"type": ["object", "null"], "description": "The spec with defaults filled in and times absolute, as the manifest records it"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    "attempts": {"type": "integer"},
                    "rows_done": {"type": "integer"},
                    "bytes_done": {"type": "integer"},
                    "shards_done": {"type": "integer"},
                    "error": {"type": "string"}
                }}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_paths_match_the_routes() {
        let doc = openapi();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                documented.push((m.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
