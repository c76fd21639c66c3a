/**
 * Creating the synthesized workflows on moto: ARNs of local functions, and the synthesized
 * DefinitionString with its CloudFormation references resolved.
 */
import { LOCAL_CLOUD_ACCOUNT, LOCAL_CLOUD_REGION } from '../../shared/aws/local-cloud/local-cloud.js';

export const functionArn = (name: string): string => `arn:aws:lambda:${LOCAL_CLOUD_REGION}:${LOCAL_CLOUD_ACCOUNT}:function:${name}`;

type Part = string | { Ref?: string; 'Fn::GetAtt'?: [string, string] };

/** The synthesized DefinitionString with CloudFormation references replaced by local ARNs. */
export function resolveDefinition(definition: unknown, refs: Readonly<Record<string, string>>): string {
  if (typeof definition === 'string') return definition;
  const join = (definition as { 'Fn::Join': [string, Part[]] })['Fn::Join'];
  const pseudo: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': LOCAL_CLOUD_REGION, 'AWS::AccountId': LOCAL_CLOUD_ACCOUNT, 'AWS::URLSuffix': 'amazonaws.com' };
  return join[1]
    .map((part) => {
      if (typeof part === 'string') return part;
      const id = part.Ref ?? part['Fn::GetAtt']?.[0];
      const value = id === undefined ? undefined : (pseudo[id] ?? refs[id]);
      if (value === undefined) throw new Error(`unresolved reference ${JSON.stringify(part)}`);
      return value;
    })
    .join(join[0]);
}
