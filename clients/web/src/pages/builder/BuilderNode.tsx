// A node on the builder's canvas: its id (or display name), type and artifact kinds, a target
// handle on the left when its type takes inputs and a source handle on the right. Flagged with
// a red border, and the problems in its title, when the server's validation named it.
import { ArtifactKind, type NodeType } from "@raypipe/client/web";
import { Handle, Position, type Node, type NodeProps } from "@xyflow/react";
import { memo } from "react";
import { NODE_HEIGHT, NODE_WIDTH } from "../../graph/layout";
import { kindName, takesInputs, type BuilderData } from "./model";

export type BuilderViewData = BuilderData & {
  nodeType: NodeType | undefined;
  /** "field: description" lines, empty when the node has no problem. */
  problems: string[];
};
export type BuilderViewNode = Node<BuilderViewData, "builder">;

export const BuilderNodeView = memo(function BuilderNodeView({ data, selected }: NodeProps<BuilderViewNode>) {
  const { node, nodeType, problems } = data;
  const flagged = problems.length > 0;
  const output = nodeType ? kindName(nodeType.output) : "?";
  const inputs = nodeType
    ? nodeType.inputs.filter((k) => k !== ArtifactKind.NONE).map(kindName).join(", ") || "none"
    : "?";
  const title = [
    `${node.id} (${node.type})${nodeType ? "" : ": unknown node type"}`,
    `takes ${inputs}, gives ${output}`,
    ...problems,
  ].join("\n");
  return (
    <div
      className={`dag-node builder-node${selected ? " selected" : ""}${flagged ? " flagged" : ""}`}
      style={{ width: NODE_WIDTH, height: NODE_HEIGHT }}
      data-node-id={node.id}
      data-node-type={node.type}
      data-invalid={flagged ? "true" : "false"}
      title={title}
    >
      {takesInputs(nodeType) && <Handle type="target" position={Position.Left} aria-label={`input of ${node.id}`} />}
      <div className="dag-node-id">
        {flagged && (
          <span className="builder-node-flag" aria-hidden="true">
            !{" "}
          </span>
        )}
        {node.displayName || node.id}
      </div>
      <div className="dag-node-sub">
        {node.type} → {output}
        {flagged ? ` · ${problems.length} problem${problems.length > 1 ? "s" : ""}` : ""}
      </div>
      <Handle type="source" position={Position.Right} aria-label={`output of ${node.id}`} />
    </div>
  );
});
