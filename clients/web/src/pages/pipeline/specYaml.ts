// A version's spec as the YAML the pipeline files use: the protobuf JSON mapping of
// PipelineSpec with proto (snake_case) field names, as `raypipe` writes and reads them.
import { toJson } from "@bufbuild/protobuf";
import { PipelineSpecSchema, type PipelineSpec } from "@raypipe/client/web";
import { stringify } from "yaml";

export function specYaml(spec: PipelineSpec | undefined): string {
  if (!spec) return "";
  return stringify(toJson(PipelineSpecSchema, spec, { useProtoFieldName: true }), { lineWidth: 0 });
}
